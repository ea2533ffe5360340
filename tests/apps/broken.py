"""An application module that fails while being imported."""

raise RuntimeError('the application module is broken')
