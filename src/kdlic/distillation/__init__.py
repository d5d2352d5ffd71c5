"""Knowledge distillation: frozen teachers, loss terms and presets, teacher-output cache."""
