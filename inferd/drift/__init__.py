"""Input drift: reference profiles of numeric inputs, live sampling, PSI and Kolmogorov-Smirnov."""
