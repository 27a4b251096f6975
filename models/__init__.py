"""qlam_tn.models."""
