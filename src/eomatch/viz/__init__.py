"""Pictures: crossover maps and matchup footprints (matplotlib, offline coastlines)."""
