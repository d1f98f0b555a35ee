// PLACEHOLDER being written by the safetensors owner
