// The `hash` example function in JavaScript: the seed's Node handler as a component.

import { examples, serve } from './serve.js';

serve(examples.hash);
