"""The model process over HTTP.

Client side (no torch, no server stack): ``protocol`` (the wire format both sides import),
``client`` (:class:`~napari_seem.remote.client.SeemClient`), ``transport`` (one HTTP
connection, typed errors) and ``process`` (a spawned ``napari-seem serve``).

Server side: ``server`` (``create_app`` over one :class:`napari_seem.engine.Engine`),
``routes`` (one router per resource) and ``exposure`` (loopback checks, the socket).
"""
