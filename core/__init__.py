"""Models and algorithms of the Puzzle-CAM pipeline."""
