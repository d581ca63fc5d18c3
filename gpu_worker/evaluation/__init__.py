"""What the pod needs to evaluate an adapter: item builders, option scoring and reply generation
(`pod_eval`) and the evaluation sets shipped with the project (`datasets`).

Imports neither Django nor, at import time, torch: the control plane reads the same item builders
(for labels and counts) and the pod image copies only gpu_worker/.
"""
