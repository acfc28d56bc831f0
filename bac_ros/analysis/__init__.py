"""What runs produced, read back: paired statistics, motion metrics, operator comparisons, tables and plots, and
the dated run folders they are written to."""
