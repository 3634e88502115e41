export * from './transport';
export * from './kafka-transport';
export * from './http-transport';
