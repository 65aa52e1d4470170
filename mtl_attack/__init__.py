"""mtl-attack: adversarial robustness of multi-task vision models.

Data flows one way: data -> tasks -> models -> attacks -> defense -> evaluation -> runner.
"""

__version__ = "0.1.0"
