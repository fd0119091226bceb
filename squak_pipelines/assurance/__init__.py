"""Revenue assurance: controls that prove nothing leaked between stages."""
