"""Images for demos, sample data, tests and training: synthetic scenes the project generates
(seeded) and readers for the real data that registry packages ship (see DATA.md)."""
