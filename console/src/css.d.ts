// Stylesheets are bundled by esbuild; to TypeScript an import of one is a side effect only.
declare module '*.css';
