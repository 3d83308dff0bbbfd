"""The stores: one module (or subpackage) per backend, each implementing the Driver seam."""
