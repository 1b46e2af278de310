"""The fault matrix (`make chaos`): real services, faults injected, final states checked."""
