"""RQ job functions, flows, pollers and the worker."""
