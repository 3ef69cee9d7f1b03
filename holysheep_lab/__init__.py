"""holysheep-lab."""
