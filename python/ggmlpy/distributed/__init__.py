"""Scale-out over an existing distributed engine: `ray_data` (Ray Data's map_batches)."""
