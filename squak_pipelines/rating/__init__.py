"""Stage 4: rating and charging."""
