"""gpu_worker: the training runtime that runs on a GPU pod (or locally as a subprocess).

It never imports Django. Its only contract with the control plane is `contracts` (job spec in,
events out) and `signing` (how those events are signed). Both import without torch.
"""
