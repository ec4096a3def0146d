"""Human review: the queue, the labelling page, estimates from labels, and their CLI."""
