"""Stage 1, orders: intake, validation, number allocation, activation, service inventory."""
