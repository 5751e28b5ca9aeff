"""Model repositories: parse config.pbtxt, discover models and ensembles, lint, edit surgically."""
