"""The engine server's routers, one per resource, and what they share.

- :mod:`~napari_seem.remote.routes.info`: ``/health``, ``/info``, ``/weights``;
- :mod:`~napari_seem.remote.routes.images`: uploaded images;
- :mod:`~napari_seem.remote.routes.sessions`: sessions, predict, ground, refer;
- :mod:`~napari_seem.remote.routes.jobs`: jobs, their events and results;
- shared: :mod:`~napari_seem.remote.routes.deps` (context, bearer token),
  :mod:`~napari_seem.remote.routes.errors` (typed error replies),
  :mod:`~napari_seem.remote.routes.limits` (body and prompt sizes),
  :mod:`~napari_seem.remote.routes.roots` (allowed paths).
"""
