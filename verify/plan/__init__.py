"""Planning a run: which zoo entries the manifest's models have, the samples every runtime gets, and the cells
(artifact, runtime, device) each model has on this machine."""
