"""The embedded stack: process supervisor, free ports, and one process spec per component."""
