// Exactly what web/README.md tells Vite users to write.
export default { optimizeDeps: { exclude: ['webjit'] }, worker: { format: 'es' }, logLevel: 'warn' };
