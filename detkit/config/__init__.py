"""Recipes: YAML files → typed, validated :class:`~detkit.config.schema.Recipe` objects."""
