"""Jupyter front-end (tier T3): the anywidget canvas and the ipywidgets controls around it.

Import through :mod:`napari_seem.jupyter`; this package needs ``anywidget`` and
``ipywidgets`` (the ``jupyter`` extra). The browser code is a plain ES module in
``static/`` (no build step, nothing loaded from a CDN).
"""
