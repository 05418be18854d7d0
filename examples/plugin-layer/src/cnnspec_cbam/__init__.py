"""CBAM as a cnnspec layer kind: `- cbam: {reduction: 16, kernel_size: 7}`."""
