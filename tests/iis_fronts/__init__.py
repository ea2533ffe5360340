"""IIS-style fronts and IIS configuration readers for the tests."""
