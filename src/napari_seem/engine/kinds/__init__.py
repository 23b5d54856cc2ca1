"""The engine's built-in job kinds: ``segment`` (a whole region through the batch runner) and
``fine_tune`` (train on labelled images, then switch weights)."""
