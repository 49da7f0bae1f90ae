"""Example dermadv plugin: a perturbation, an attack, a model format and a report section, each one file
(see README.md)."""

__version__ = "0.1.0"
