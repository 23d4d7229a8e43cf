// Entry point of the operator console (/console/).
import './console.css';
import { loadConfig } from '../shared/hub.js';
import { ConsoleApp } from './app.js';

void loadConfig().then((config) => new ConsoleApp(config).start());
