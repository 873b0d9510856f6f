"""Model versions as GTO git tags, compared, fetched, checked and swept."""
