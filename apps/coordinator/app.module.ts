import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_GUARD } from '@nestjs/core';
import { TerminusModule } from '@nestjs/terminus';
import { ThrottlerModule } from '@nestjs/throttler';
import { TypeOrmModule } from '@nestjs/typeorm';
import { LoggerModule, PinoLogger } from 'nestjs-pino';
import type { Logger } from 'pino';
import { AdminController } from './api/admin.controller';
import { ProblemFilter } from './api/problem.filter';
import { ApiKeyGuard } from './api/auth.guard';
import { MessagesController } from './api/messages.controller';
import { RateLimitGuard, rateLimitOptions } from './api/rate-limit.guard';
import { TransactionsController } from './api/transactions.controller';
import { CONFIG, CoordinatorConfig } from './config/config';
import { HealthController } from './health/health.controller';
import { MetricsController } from './metrics/metrics.controller';
import { MetricsService } from './metrics/metrics.service';
import { databaseOptions } from './log/database';
import { DecisionLog } from './log/decision-log';
import { CoordinatorService } from './protocol/coordinator.service';
import { LifecycleService } from './protocol/lifecycle.service';
import { RetentionService } from './protocol/retention.service';
import { StuckReporter } from './protocol/stuck.service';
import { TRANSPORT } from './protocol/tokens';
import { createTransport } from './protocol/transport.factory';

@Module({})
export class AppModule {
  static forRoot(config: CoordinatorConfig, logger: Logger): DynamicModule {
    return {
      module: AppModule,
      imports: [
        // No request middleware from nestjs-pino (forRoutes: none): main.ts mounts the access log.
        LoggerModule.forRoot({ pinoHttp: { logger }, forRoutes: [] }),
        TypeOrmModule.forRootAsync({ useFactory: () => databaseOptions(config) }),
        TerminusModule,
        ThrottlerModule.forRoot(rateLimitOptions(config)),
      ],
      controllers: [TransactionsController, MessagesController, AdminController, HealthController, MetricsController],
      providers: [
        { provide: CONFIG, useValue: config },
        { provide: TRANSPORT, inject: [PinoLogger], useFactory: (logger: PinoLogger) => createTransport(config, logger) },
        { provide: APP_FILTER, useClass: ProblemFilter },
        // Global, so it runs before each controller's ApiKeyGuard; it limits /v1 only (see the guard).
        { provide: APP_GUARD, useClass: RateLimitGuard },
        ApiKeyGuard,
        DecisionLog,
        MetricsService,
        CoordinatorService,
        LifecycleService,
        StuckReporter,
        RetentionService,
      ],
    };
  }
}
