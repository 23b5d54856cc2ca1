"""The model process over HTTP: ``protocol`` (wire format), ``client`` (no torch, no server
stack) and ``server`` (FastAPI over one :class:`napari_seem.engine.Engine`).
"""
