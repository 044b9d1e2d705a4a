"""whatsapp-operator: keeps drivers' WhatsApp links on Evolution API alive, on Kubernetes."""

GROUP = "whatsapp.evolution-operator.io"
VERSION = "v1alpha1"
