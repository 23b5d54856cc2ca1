"""Images for demos, sample data, tests and training: synthetic scenes the project generates
(seeded) and readers for the real data that registry packages ship (see DATA.md).

- :mod:`~napari_seem.datasets.generate`: ``generate(modality, seed, shape, **options) -> Scene``
  for fluorescence nuclei, fluorescent cells, phase contrast, bright-field, EM, H&E and
  multi-band land cover, with exact instance and class labels (one ``gen_*`` module each; shared
  drawing in :mod:`~napari_seem.datasets.render`, label tidying in
  :mod:`~napari_seem.datasets.instances`, the record in :mod:`~napari_seem.datasets.scene`).
- :mod:`~napari_seem.datasets.sampler`: fresh training crops every step with label-exact
  augmentations, and the held-out evaluation seeds (seeds >= 10,000,000 never train).
- :mod:`~napari_seem.datasets.preview`: image | outline PNGs (``docs/images/synthetic``).
- :mod:`~napari_seem.datasets.synthetic`: the earlier simple generators (kept as they are).
- :mod:`~napari_seem.datasets.real`: readers of the packaged real data.
"""
