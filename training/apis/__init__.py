"""DRF views of the training app, one module per topic: parse input, call one service or
selector, render output. Every view is scoped to the caller's organization."""
