"""Pure domain of export-service: ERP connections, exports, retries, file names, renderers."""
