"""The embedded CPU portrait avatar: a still photo animated by warping."""
