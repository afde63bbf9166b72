"""Template tracking of the target on 2D cine-MR frames: pure computation on arrays."""
