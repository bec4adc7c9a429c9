"""The thin HTTP layer: parse and validate, authorise, call the LogStore, shape ModelArts responses."""
