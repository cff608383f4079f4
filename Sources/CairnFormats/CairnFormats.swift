/// File formats of model artifacts. Safetensors header parsing lands here (tensor name → byte range).
public enum CairnFormats {}
