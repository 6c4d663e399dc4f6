// Plugins write `import CapstanSDK` and get the resource types of CapstanCore with it.
@_exported public import CapstanCore
