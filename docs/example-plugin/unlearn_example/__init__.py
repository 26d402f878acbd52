"""An example unlearning method distributed as its own package (see docs/adding-a-method.md)."""
