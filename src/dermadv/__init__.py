"""dermadv: clinically relevant adversarial vulnerabilities of skin-cancer classifiers.

Pipeline: data -> model adapters -> perturbations + search + success criterion -> attacks
-> campaign runner and results store -> analysis and reports; the reader study beside it.
"""

__version__ = "0.1.0"
