"""Qt-free application state shared by the scripting API, napari and Jupyter.

- :mod:`~napari_seem.app.backend`: the one :class:`ModelBackend` protocol, with a local
  (in-process Engine) and a remote (SeemClient) implementation, and job following;
- :mod:`~napari_seem.app.images`: images opened on a backend (the API's and Jupyter's view);
- :mod:`~napari_seem.app.everything`: segment everything in a region (job or click grid);
- :mod:`~napari_seem.app.propagate`: follow one object through a stack;
- :mod:`~napari_seem.app.labels`: the one label store with commit and undo;
- :mod:`~napari_seem.app.arguments`: the scripting API's prompt arguments, checked;
- :mod:`~napari_seem.app.models`: engines built from names, and their cache.

Nothing here imports torch, Qt or ipywidgets at import time.
"""
