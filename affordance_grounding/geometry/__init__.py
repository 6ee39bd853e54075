"""3D from colour-aligned depth: the REP-118 depth rule, region cloud, grasp point and pose."""
