@_exported import XMLCore
