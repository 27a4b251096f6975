"""qlam_tn.experiments."""
