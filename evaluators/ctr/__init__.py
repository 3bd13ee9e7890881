"""CTR prediction tasks: Criteo-format reading and hashing (``criteo``), a documented synthetic
generator in the same format (``synthetic``) and the metrics CTR people read (``metrics``)."""
