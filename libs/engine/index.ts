export * from './types';
export * from './coordinator';
export * from './invariants';
export * from './progress';
