"""Pure business rules of draft orders: no I/O, no frameworks."""
